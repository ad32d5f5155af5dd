//! Prometheus metrics: counters kept per worker thread so that counting costs no shared writes,
//! summed on scrape, and the optional HTTP endpoint (`--metrics ADDR`) that serves them.
//!
//! Every session counts requests, error replies and bytes on the hot path. A shared atomic counter
//! would put one contended cache line under both worker threads for every request; instead each
//! thread owns a shard of plain counters (written only by that thread, read by the scraper) and a
//! scrape adds the shards up. A count costs a thread-local lookup and an unshared store.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::http::{self, Page, Site};

use crate::protocol::{COMMANDS, Command, ErrorKind};
use crate::responder::CloseReason;
use crate::service::Service;
use crate::timesync::{Health, SyncState};

/// A counter family: exported name (without `_total`), help, label name and label values.
struct Family {
    name: &'static str,
    help: &'static str,
    label: Option<&'static str>,
    /// The label values, in the order of the family's [`Count`] indices (one unnamed value for
    /// a family without a label).
    values: &'static [&'static str],
}

/// Every counter family, in the order they are rendered.
const FAMILIES: [Family; 8] = [
    Family {
        name: "jamd_connections_accepted",
        help: "Connections accepted and served, by service (jam, rfc868, daytime).",
        label: Some("service"),
        values: &Service::LABELS,
    },
    Family {
        name: "jamd_connections_refused",
        help: "Connections turned away, by reason (busy: at the connection limit; per_ip: the client address at its limit; proxy_header: missing or invalid PROXY protocol header).",
        label: Some("reason"),
        values: &Refusal::LABELS,
    },
    Family {
        name: "jamd_requests",
        help: "Requests received on jam sessions, by command (blank lines are not requests).",
        label: Some("command"),
        values: &RequestKind::LABELS,
    },
    Family {
        name: "jamd_error_replies",
        help: "ERR lines sent, by kind.",
        label: Some("kind"),
        values: &ERROR_LABELS,
    },
    Family {
        name: "jamd_connections_closed",
        help: "Connections closed, by reason.",
        label: Some("reason"),
        values: &CloseReason::LABELS,
    },
    Family {
        name: "jamd_received_bytes",
        help: "Bytes read from clients.",
        label: None,
        values: &[""],
    },
    Family {
        name: "jamd_sent_bytes",
        help: "Bytes written to clients.",
        label: None,
        values: &[""],
    },
    Family {
        name: "jamd_accept_errors",
        help: "accept() failures, by kind (resources: out of descriptors or memory, accepts pause; connection: one connection failed).",
        label: Some("kind"),
        values: &AcceptError::LABELS,
    },
];

/// The error kinds' labels, in [`ErrorKind`] order.
const ERROR_LABELS: [&str; ErrorKind::ALL.len()] = {
    let mut labels = [""; ErrorKind::ALL.len()];
    let mut i = 0;
    while i < labels.len() {
        labels[i] = ErrorKind::ALL[i].label();
        i += 1;
    }
    labels
};

/// Where each family's counters start in a [`Shard`]; the last entry is the total.
const OFFSETS: [usize; FAMILIES.len() + 1] = {
    let mut offsets = [0; FAMILIES.len() + 1];
    let mut i = 0;
    while i < FAMILIES.len() {
        offsets[i + 1] = offsets[i] + FAMILIES[i].values.len();
        i += 1;
    }
    offsets
};

/// How many counters there are.
const COUNTS: usize = OFFSETS[FAMILIES.len()];

/// Why a connection was turned away before being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)] // the family's help says what each means
pub(crate) enum Refusal {
    Busy,
    ProxyHeader,
    PerIp,
}

impl Refusal {
    const LABELS: [&'static str; 3] = ["busy", "proxy_header", "per_ip"];

    /// The refusal's name, in logs and metrics.
    pub fn label(self) -> &'static str {
        Self::LABELS[self as usize]
    }
}

/// A request on a jam session, by command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// A command of the protocol's table.
    Command(Command),
    /// Anything answered with an error line.
    Other,
}

impl RequestKind {
    /// Each command's label from the protocol's table, then `other`.
    const LABELS: [&'static str; COMMANDS.len() + 1] = {
        let mut labels = ["other"; COMMANDS.len() + 1];
        let mut i = 0;
        while i < COMMANDS.len() {
            labels[i] = COMMANDS[i].label;
            i += 1;
        }
        labels
    };

    fn index(self) -> usize {
        match self {
            RequestKind::Command(command) => command as usize,
            RequestKind::Other => COMMANDS.len(),
        }
    }
}

/// How an `accept()` failure is handled (and counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AcceptError {
    /// The process or system is out of something (descriptors, memory): pause, then retry.
    Resources,
    /// Only the connection being accepted failed: accept the next one at once.
    Connection,
}

impl AcceptError {
    const LABELS: [&'static str; 2] = ["resources", "connection"];
}

/// Everything counted: one label value of one family. The enums that name events in the logs
/// ([`CloseReason`], [`ErrorKind`], [`Service`]) are the labels here too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Count {
    /// A connection accepted and served.
    Accepted(Service),
    /// A connection turned away.
    Refused(Refusal),
    /// A request on a jam session.
    Request(RequestKind),
    /// An error line sent.
    Error(ErrorKind),
    /// A connection closed.
    Closed(CloseReason),
    /// Bytes read from clients.
    ReceivedBytes,
    /// Bytes written to clients.
    SentBytes,
    /// An `accept()` failure.
    AcceptError(AcceptError),
}

impl Count {
    /// The count's family (its place in [`FAMILIES`]) and its value's place in that family.
    fn place(self) -> (usize, usize) {
        match self {
            Count::Accepted(service) => (
                0,
                match service {
                    Service::Jam => 0,
                    Service::Time => 1,
                    Service::Daytime => 2,
                },
            ),
            Count::Refused(refusal) => (1, refusal as usize),
            Count::Request(kind) => (2, kind.index()),
            Count::Error(kind) => (3, kind as usize),
            Count::Closed(reason) => (4, reason.index()),
            Count::ReceivedBytes => (5, 0),
            Count::SentBytes => (6, 0),
            Count::AcceptError(kind) => (7, kind as usize),
        }
    }

    /// The count's place in a [`Shard`].
    fn index(self) -> usize {
        let (family, value) = self.place();
        OFFSETS[family] + value
    }
}

/// One thread's counters. Only the owning thread writes; scrapes read.
struct Shard([AtomicU64; COUNTS]);

impl Shard {
    fn add(&self, count: Count, n: u64) {
        let cell = &self.0[count.index()];
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
    pub(crate) fn add(&self, count: Count, n: u64) {
        self.with_shard(|shard| shard.add(count, n));
    }

    /// Adds several counts with one shard lookup.
    pub(crate) fn add_all(&self, counts: &[(Count, u64)]) {
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
    pub(crate) fn total(&self, count: Count) -> u64 {
        self.total_at(count.index())
    }

    fn total_at(&self, index: usize) -> u64 {
        self.shards.lock().map_or(0, |shards| {
            shards
                .iter()
                .map(|s| s.0[index].load(Ordering::Relaxed))
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
pub(crate) struct Gauges {
    /// Sessions open now.
    pub active: usize,
    /// The connection limit.
    pub max_connections: usize,
}

/// Renders the metrics in the Prometheus text exposition format (version 0.0.4).
pub(crate) fn render(metrics: &Metrics, gauges: Gauges) -> String {
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
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A registry holding this moment's values. Building one per scrape (every few seconds at most)
/// keeps the hot path free of the registry's locks and hash maps: requests only touch shards.
fn snapshot(m: &Metrics, gauges: Gauges) -> prometheus::Result<prometheus::Registry> {
    use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};
    let registry = prometheus::Registry::new();
    for (family, offset) in FAMILIES.iter().zip(OFFSETS) {
        let total = |value: usize| m.total_at(offset + value);
        let opts = Opts::new(format!("{}_total", family.name), family.help);
        match family.label {
            Some(label) => {
                let counters = IntCounterVec::new(opts, &[label])?;
                for (value, name) in family.values.iter().enumerate() {
                    counters.with_label_values(&[*name]).inc_by(total(value));
                }
                registry.register(Box::new(counters))?;
            }
            None => {
                let counter = IntCounter::with_opts(opts)?;
                counter.inc_by(total(0));
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

/// Serves `GET /metrics` on `listener` until `shutdown`, rendering with `render_now`.
pub async fn serve(
    listener: TcpListener,
    render_now: Arc<dyn Fn() -> String + Send + Sync>,
    shutdown: CancellationToken,
) {
    let site = Site {
        page: Box::new(move |path| match path {
            "/metrics" => Some(Page::new(CONTENT_TYPE, render_now())),
            "/" => Some(Page::new(
                "text/plain; charset=utf-8",
                "jamd metrics: GET /metrics\n",
            )),
            _ => None,
        }),
        not_found: "not found; try /metrics\n",
        read_only: "only GET /metrics\n",
        no_store: false,
        name: "metrics",
    };
    http::serve(listener, Arc::new(site), shutdown).await;
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
    fn every_count_has_its_own_counter_under_its_own_label() {
        let samples = [
            (Count::Accepted(Service::Jam), "service", "jam"),
            (Count::Accepted(Service::Time), "service", "rfc868"),
            (Count::Accepted(Service::Daytime), "service", "daytime"),
            (Count::Refused(Refusal::Busy), "reason", "busy"),
            (
                Count::Refused(Refusal::ProxyHeader),
                "reason",
                "proxy_header",
            ),
            (Count::Refused(Refusal::PerIp), "reason", "per_ip"),
            (
                Count::Request(RequestKind::Command(Command::Time)),
                "command",
                "TIME",
            ),
            (
                Count::Request(RequestKind::Command(Command::Quit)),
                "command",
                "QUIT",
            ),
            (Count::Request(RequestKind::Other), "command", "other"),
            (
                Count::AcceptError(AcceptError::Resources),
                "kind",
                "resources",
            ),
            (
                Count::AcceptError(AcceptError::Connection),
                "kind",
                "connection",
            ),
        ];
        let errors = ErrorKind::ALL.map(|k| (Count::Error(k), "kind", k.label()));
        let closes = [
            CloseReason::Quit,
            CloseReason::ClientClosed,
            CloseReason::IdleTimeout,
            CloseReason::LineTimeout,
            CloseReason::LineTooLong,
            CloseReason::WriteTimeout,
            CloseReason::NotHttp,
            CloseReason::Shutdown,
            CloseReason::Reset,
            CloseReason::Error(io::ErrorKind::Other),
            CloseReason::Answered,
            CloseReason::ProxyHeader,
            CloseReason::PerIp,
            CloseReason::Internal,
        ]
        .map(|r| (Count::Closed(r), "reason", r.label()));
        let all: Vec<_> = samples.into_iter().chain(errors).chain(closes).collect();
        assert_eq!(all.len() + 2, COUNTS, "every labelled counter is sampled");
        let metrics = Metrics::default();
        for (i, (count, ..)) in all.iter().enumerate() {
            metrics.add(*count, i as u64 + 1);
        }
        let text = render(&metrics, Gauges::default());
        for (i, (count, label, value)) in all.iter().enumerate() {
            let line = format!("{{{label}=\"{value}\"}} {}", i + 1);
            assert!(
                text.lines().any(|l| l.ends_with(&line)),
                "{count:?}: no line ending in {line:?} in\n{text}"
            );
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
                        metrics.add(Count::Request(RequestKind::Command(Command::Time)), 1);
                    }
                    metrics.add_all(&[(Count::SentBytes, 14), (Count::ReceivedBytes, 6)]);
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(
            metrics.total(Count::Request(RequestKind::Command(Command::Time))),
            4000
        );
        assert_eq!(metrics.total(Count::SentBytes), 56);
        assert_eq!(metrics.total(Count::ReceivedBytes), 24);
    }

    #[test]
    fn two_servers_in_one_thread_keep_separate_counts() {
        let (a, b) = (Metrics::default(), Metrics::default());
        a.add(Count::Request(RequestKind::Command(Command::Time)), 2);
        b.add(Count::Request(RequestKind::Command(Command::Time)), 3);
        a.add(Count::Request(RequestKind::Command(Command::Time)), 1);
        assert_eq!(
            a.total(Count::Request(RequestKind::Command(Command::Time))),
            3
        );
        assert_eq!(
            b.total(Count::Request(RequestKind::Command(Command::Time))),
            3
        );
    }

    #[test]
    fn the_rendering_has_labelled_counters_gauges_and_build_info() {
        let metrics = Arc::new(Metrics::default());
        metrics.add(Count::Request(RequestKind::Command(Command::Time)), 7);
        metrics.add(Count::Error(ErrorKind::UnknownCommand), 2);
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
