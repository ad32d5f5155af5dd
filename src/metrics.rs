//! Prometheus metrics: counters kept per worker thread so that counting costs no shared writes,
//! summed on scrape, and the optional HTTP endpoint (`--metrics ADDR`) that serves them.
//!
//! Every session counts requests, error replies and bytes on the hot path. A shared atomic counter
//! would put one contended cache line under both worker threads for every request; instead each
//! thread owns a shard of plain counters (written only by that thread, read by the scraper) and a
//! scrape adds the shards up. A count costs a thread-local lookup and an unshared store.

use std::cell::RefCell;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::timesync::{Health, SyncState};

/// A counter family: exported name (without `_total`), help, and label name.
struct Family {
    name: &'static str,
    help: &'static str,
    label: Option<&'static str>,
}

const ACCEPTED: Family = Family {
    name: "jamd_connections_accepted",
    help: "Connections accepted and served, by service (jam, rfc868, daytime).",
    label: Some("service"),
};
const REFUSED: Family = Family {
    name: "jamd_connections_refused",
    help: "Connections turned away, by reason (busy: at the connection limit; per_ip: the client address at its limit; proxy_header: missing or invalid PROXY protocol header).",
    label: Some("reason"),
};
const REQUESTS: Family = Family {
    name: "jamd_requests",
    help: "Requests received on jam sessions, by command (blank lines are not requests).",
    label: Some("command"),
};
const ERRORS: Family = Family {
    name: "jamd_error_replies",
    help: "ERR lines sent, by kind.",
    label: Some("kind"),
};
const CLOSED: Family = Family {
    name: "jamd_connections_closed",
    help: "Connections closed, by reason.",
    label: Some("reason"),
};
const RECEIVED: Family = Family {
    name: "jamd_received_bytes",
    help: "Bytes read from clients.",
    label: None,
};
const SENT: Family = Family {
    name: "jamd_sent_bytes",
    help: "Bytes written to clients.",
    label: None,
};
const ACCEPT_ERRORS: Family = Family {
    name: "jamd_accept_errors",
    help: "accept() failures, by kind (resources: out of descriptors or memory, accepts pause; connection: one connection failed).",
    label: Some("kind"),
};

/// Declares [`Count`], the list of all counts in order, and each count's family and label value,
/// from one table, so the three cannot disagree.
macro_rules! counts {
    ($($count:ident => $family:ident $label:literal,)*) => {
        /// Everything counted. Each is one sample of a labelled family (see [`Count::family`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        #[allow(missing_docs)] // the names say it; the table gives exported name and label
        pub enum Count {
            $($count,)*
        }

        /// Every [`Count`], in order.
        const ALL: &[Count] = &[$(Count::$count,)*];

        impl Count {
            /// The family this count belongs to and its label value.
            fn family(self) -> (&'static Family, &'static str) {
                match self {
                    $(Count::$count => (&$family, $label),)*
                }
            }
        }
    };
}

counts! {
    AcceptedJam => ACCEPTED "jam",
    AcceptedTime => ACCEPTED "rfc868",
    AcceptedDaytime => ACCEPTED "daytime",
    RefusedBusy => REFUSED "busy",
    RefusedProxyHeader => REFUSED "proxy_header",
    RefusedPerIp => REFUSED "per_ip",
    RequestTime => REQUESTS "TIME",
    RequestQuit => REQUESTS "QUIT",
    RequestOther => REQUESTS "other",
    ErrorUnknownCommand => ERRORS "unknown_command",
    ErrorExtraArguments => ERRORS "extra_arguments",
    ErrorNotHttp => ERRORS "not_http",
    ErrorLineTooLong => ERRORS "line_too_long",
    ErrorMissingLineEnd => ERRORS "missing_line_end",
    ErrorIdleTimeout => ERRORS "idle_timeout",
    ErrorLineTimeout => ERRORS "line_timeout",
    ErrorServerBusy => ERRORS "server_busy",
    ErrorPerIp => ERRORS "per_ip",
    ClosedQuit => CLOSED "quit",
    ClosedClientClosed => CLOSED "client_closed",
    ClosedIdleTimeout => CLOSED "idle_timeout",
    ClosedLineTimeout => CLOSED "line_timeout",
    ClosedLineTooLong => CLOSED "line_too_long",
    ClosedWriteTimeout => CLOSED "write_timeout",
    ClosedHttp => CLOSED "http_request",
    ClosedShutdown => CLOSED "shutdown",
    ClosedReset => CLOSED "reset",
    ClosedError => CLOSED "io_error",
    ClosedAnswered => CLOSED "answered",
    ClosedProxyHeader => CLOSED "proxy_header",
    ClosedPerIp => CLOSED "per_ip",
    ReceivedBytes => RECEIVED "",
    SentBytes => SENT "",
    AcceptErrorResources => ACCEPT_ERRORS "resources",
    AcceptErrorConnection => ACCEPT_ERRORS "connection",
}

/// How many [`Count`]s there are.
const COUNTS: usize = ALL.len();

/// One thread's counters. Only the owning thread writes; scrapes read.
struct Shard([AtomicU64; COUNTS]);

impl Shard {
    fn add(&self, count: Count, n: u64) {
        let cell = &self.0[count as usize];
        // Single writer: a plain load and store, no locked read-modify-write.
        cell.store(
            cell.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }
}

thread_local! {
    /// This thread's shard of each live [`Metrics`] (usually one), by metrics id.
    static SHARDS: RefCell<Vec<(u64, Arc<Shard>)>> = const { RefCell::new(Vec::new()) };
}

/// Distinguishes [`Metrics`] instances (tests run several servers in one process).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A server's counters and clock state.
pub struct Metrics {
    id: u64,
    shards: Mutex<Vec<Arc<Shard>>>,
    started: Instant,
    /// The last clock-synchronisation reading: 0 unknown, 1 synchronised, 2 not.
    clock_state: AtomicU64,
    clock_max_error_us: AtomicU64,
    clock_est_error_us: AtomicU64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            shards: Mutex::new(Vec::new()),
            started: Instant::now(),
            clock_state: AtomicU64::new(0),
            clock_max_error_us: AtomicU64::new(0),
            clock_est_error_us: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Adds `n` to `count`.
    pub fn add(&self, count: Count, n: u64) {
        self.with_shard(|shard| shard.add(count, n));
    }

    /// Adds several counts with one shard lookup.
    pub fn add_all(&self, counts: &[(Count, u64)]) {
        self.with_shard(|shard| {
            for &(count, n) in counts {
                if n != 0 {
                    shard.add(count, n);
                }
            }
        });
    }

    fn with_shard(&self, f: impl FnOnce(&Shard)) {
        SHARDS.with_borrow_mut(|shards| {
            if let Some((_, shard)) = shards.iter().find(|(id, _)| *id == self.id) {
                return f(shard);
            }
            let shard = Arc::new(Shard(std::array::from_fn(|_| AtomicU64::new(0))));
            if let Ok(mut all) = self.shards.lock() {
                all.push(shard.clone());
            }
            // Threads outlive servers only in tests; drop shards of servers that are gone.
            shards.retain(|(_, s)| Arc::strong_count(s) > 1);
            shards.push((self.id, shard.clone()));
            f(&shard);
        });
    }

    /// The total of `count` over every thread.
    pub fn total(&self, count: Count) -> u64 {
        self.shards.lock().map_or(0, |shards| {
            shards
                .iter()
                .map(|s| s.0[count as usize].load(Ordering::Relaxed))
                .fold(0u64, u64::wrapping_add)
        })
    }

    /// Records a clock-synchronisation reading for the `jamd_clock_*` gauges.
    pub fn record_clock(&self, reading: &io::Result<SyncState>) {
        let (state, max, est) = match reading {
            Ok(s) => (
                if s.health() == Health::Unsynchronised {
                    2
                } else {
                    1
                },
                s.max_error.as_micros() as u64,
                s.est_error.as_micros() as u64,
            ),
            Err(_) => (0, 0, 0),
        };
        self.clock_max_error_us.store(max, Ordering::Relaxed);
        self.clock_est_error_us.store(est, Ordering::Relaxed);
        self.clock_state.store(state, Ordering::Relaxed);
    }
}

/// Gauges read from the server at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Sessions open now.
    pub active: usize,
    /// The connection limit.
    pub max_connections: usize,
}

/// Renders the metrics in the Prometheus text exposition format (version 0.0.4).
pub fn render(metrics: &Metrics, gauges: Gauges) -> String {
    match snapshot(metrics, gauges) {
        Ok(registry) => {
            let mut out = String::new();
            match prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut out) {
                Ok(()) => out,
                Err(e) => format!("# cannot encode metrics: {e}\n"),
            }
        }
        Err(e) => format!("# cannot collect metrics: {e}\n"),
    }
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A registry holding this moment's values. Building one per scrape (every few seconds at most)
/// keeps the hot path free of the registry's locks and hash maps: requests only touch shards.
fn snapshot(m: &Metrics, gauges: Gauges) -> prometheus::Result<prometheus::Registry> {
    use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};
    let registry = prometheus::Registry::new();
    let mut rest = ALL;
    while let Some(first) = rest.first() {
        let family = first.family().0;
        let members = rest
            .iter()
            .take_while(|c| std::ptr::eq(c.family().0, family))
            .count();
        let (these, others) = rest.split_at(members);
        rest = others;
        let opts = Opts::new(format!("{}_total", family.name), family.help);
        match family.label {
            Some(label) => {
                let counters = IntCounterVec::new(opts, &[label])?;
                for &count in these {
                    counters
                        .with_label_values(&[count.family().1])
                        .inc_by(m.total(count));
                }
                registry.register(Box::new(counters))?;
            }
            None => {
                let counter = IntCounter::with_opts(opts)?;
                counter.inc_by(m.total(*first));
                registry.register(Box::new(counter))?;
            }
        }
    }
    let whole = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
    let synchronized = i64::from(m.clock_state.load(Ordering::Relaxed) == 1);
    for (name, help, value) in [
        (
            "jamd_connections_active",
            "Sessions open now.",
            whole(gauges.active),
        ),
        (
            "jamd_connections_max",
            "The connection limit.",
            whole(gauges.max_connections),
        ),
        (
            "jamd_clock_synchronized",
            "1 if the kernel reports the system clock synchronised, 0 if not or unknown.",
            synchronized,
        ),
    ] {
        let gauge = IntGauge::new(name, help)?;
        gauge.set(value);
        registry.register(Box::new(gauge))?;
    }
    for (name, help, value) in [
        (
            "jamd_uptime_seconds",
            "Seconds since the server started.",
            m.started.elapsed().as_secs_f64(),
        ),
        (
            "jamd_clock_maximum_error_seconds",
            "The kernel's maximum error of the system clock (adjtimex maxerror).",
            us_to_secs(m.clock_max_error_us.load(Ordering::Relaxed)),
        ),
        (
            "jamd_clock_estimated_error_seconds",
            "The kernel's estimated error of the system clock (adjtimex esterror).",
            us_to_secs(m.clock_est_error_us.load(Ordering::Relaxed)),
        ),
    ] {
        let gauge = Gauge::new(name, help)?;
        gauge.set(value);
        registry.register(Box::new(gauge))?;
    }
    // The Prometheus build-info convention: a gauge fixed at 1 whose labels carry the data.
    let build = IntGaugeVec::new(
        Opts::new(
            "jamd_build_info",
            "Build information: the version is a label; the value is always 1.",
        ),
        &["version"],
    )?;
    build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    registry.register(Box::new(build))?;
    Ok(registry)
}

fn us_to_secs(us: u64) -> f64 {
    Duration::from_micros(us).as_secs_f64()
}

/// Most scrape connections served at once; more wait in the listen queue.
const MAX_SCRAPERS: usize = 16;

/// How long a scrape connection may take to send its request and to be served.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `GET /metrics` on `listener` until `shutdown`, rendering with `render_now`.
pub async fn serve(
    listener: TcpListener,
    render_now: Arc<dyn Fn() -> String + Send + Sync>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(MAX_SCRAPERS));
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => return,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    debug!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let render_now = render_now.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request| {
                let render_now = render_now.clone();
                async move { Ok::<_, Infallible>(answer(&request, &*render_now)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            match tokio::time::timeout(SCRAPE_TIMEOUT, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(%peer, error = %e, "metrics request failed"),
                Err(_) => debug!(%peer, "metrics request timed out"),
            }
        });
    }
}

fn answer<B>(request: &Request<B>, render_now: &dyn Fn() -> String) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = content_type.parse() {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, value);
        }
        response
    };
    let text = "text/plain; charset=utf-8";
    match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            reply(StatusCode::OK, CONTENT_TYPE, render_now())
        }
        (&Method::GET | &Method::HEAD, "/") => reply(
            StatusCode::OK,
            text,
            "jamd metrics: GET /metrics\n".to_string(),
        ),
        (&Method::GET | &Method::HEAD, _) => reply(
            StatusCode::NOT_FOUND,
            text,
            "not found; try /metrics\n".to_string(),
        ),
        _ => {
            let mut response = reply(
                StatusCode::METHOD_NOT_ALLOWED,
                text,
                "only GET /metrics\n".to_string(),
            );
            if let Ok(value) = "GET, HEAD".parse() {
                response.headers_mut().insert(hyper::header::ALLOW, value);
            }
            response
        }
    }
}

/// Logs where metrics are served.
pub fn log_listening(addr: std::net::SocketAddr) {
    let mut url = String::new();
    let _ = write!(url, "http://{addr}/metrics");
    info!(%url, "metrics listening on {addr}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_count_is_listed_once_in_order() {
        for (i, count) in ALL.iter().enumerate() {
            assert_eq!(*count as usize, i, "{count:?}");
        }
    }

    #[test]
    fn families_are_contiguous_so_each_is_described_once() {
        let mut seen: Vec<&str> = Vec::new();
        let mut last = "";
        for &count in ALL {
            let name = count.family().0.name;
            if name != last {
                assert!(!seen.contains(&name), "{name} is split");
                seen.push(name);
                last = name;
            }
        }
    }

    #[test]
    fn counts_from_several_threads_add_up() {
        let metrics = Arc::new(Metrics::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let metrics = metrics.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        metrics.add(Count::RequestTime, 1);
                    }
                    metrics.add_all(&[(Count::SentBytes, 14), (Count::ReceivedBytes, 6)]);
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(metrics.total(Count::RequestTime), 4000);
        assert_eq!(metrics.total(Count::SentBytes), 56);
        assert_eq!(metrics.total(Count::ReceivedBytes), 24);
    }

    #[test]
    fn two_servers_in_one_thread_keep_separate_counts() {
        let (a, b) = (Metrics::default(), Metrics::default());
        a.add(Count::RequestTime, 2);
        b.add(Count::RequestTime, 3);
        a.add(Count::RequestTime, 1);
        assert_eq!(a.total(Count::RequestTime), 3);
        assert_eq!(b.total(Count::RequestTime), 3);
    }

    #[test]
    fn the_rendering_has_labelled_counters_gauges_and_build_info() {
        let metrics = Arc::new(Metrics::default());
        metrics.add(Count::RequestTime, 7);
        metrics.add(Count::ErrorUnknownCommand, 2);
        let text = render(
            &metrics,
            Gauges {
                active: 3,
                max_connections: 100,
            },
        );
        for line in [
            "# TYPE jamd_requests_total counter",
            "jamd_requests_total{command=\"TIME\"} 7",
            "jamd_requests_total{command=\"QUIT\"} 0",
            "jamd_error_replies_total{kind=\"unknown_command\"} 2",
            "jamd_sent_bytes_total 0",
            "jamd_connections_active 3",
            "jamd_connections_max 100",
            "# TYPE jamd_build_info gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(
            text.contains(&format!(
                "jamd_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
    }
}
