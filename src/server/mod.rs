//! The server: one event model from accept to close.
//!
//! `jamd` runs one event loop per worker thread ([`worker`]), each a plain `mio` poll over its
//! own copies of the listeners and a slab of connections; a connection lives in the loop that
//! accepted it from accept to close. Each connection is a pure state machine ([`connection`]:
//! events in at an explicit tick, actions out) driven by a thin socket adapter ([`conn`]).
//! Deadlines (idle, line, write, PROXY header, linger, drain) are one rule set ([`deadlines`]),
//! kept in a per-loop heap. The pure protocol core ([`crate::responder`]) turns input bytes into
//! reply bytes.
//! tokio stays off this path: it runs the metrics endpoint, the clock watch and the clients.
//!
//! See docs/ARCHITECTURE.md for the picture.

mod admission;
mod conn;
mod connection;
mod deadlines;
mod shared;
mod worker;

// Around the event loops: binding (listener, ports), PROXY headers, the per-address limit,
// metrics, clock health, systemd, dropping root. lib.rs re-exports the public ones under their
// short names (`jam::metrics`…); per_ip is the crate's own.
pub mod listener;
pub mod metrics;
pub(crate) mod per_ip;
pub mod ports;
pub mod privileges;
pub mod proxy;
pub mod systemd;
pub mod timesync;

pub use shared::Stats;

use shared::Shared;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use std::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::LocalClock;
use crate::config::ServerConfig;
use crate::service::Service;
use metrics::{Gauges, Metrics};

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

/// A jam server over already-bound listeners.
pub struct Server {
    listeners: Vec<(std::net::TcpListener, Service)>,
    shared: Arc<Shared>,
}

impl Server {
    /// A server that will accept on `listeners` (bound and listening), with `config` limits,
    /// reading `clock`.
    pub fn new(listeners: Vec<TcpListener>, config: ServerConfig, clock: LocalClock) -> Self {
        let mut server = Server {
            listeners: Vec::new(),
            shared: Arc::new(Shared::new(config, clock)),
        };
        for listener in listeners {
            server = server.with_listener(listener, Service::Jam);
        }
        server
    }

    /// Also accepts on `listener`, speaking `service` there.
    pub fn with_listener(mut self, listener: TcpListener, service: Service) -> Self {
        // The event loops poll it: it must not block.
        match listener.set_nonblocking(true) {
            Ok(()) => self.listeners.push((listener, service)),
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
    ///
    /// A token, not any future: the loops check the caller's own token before every accept, so a
    /// client that connects after `cancel()` returns is never taken in. A future would be seen
    /// only once this task is next polled, and the loops would accept meanwhile.
    pub async fn run(self, shutdown: CancellationToken) -> Stats {
        let _ = self.shared.shutdown.set(shutdown.clone());
        let threads = match self.shared.config.threads {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            n => n,
        };
        let mut wakers = Vec::new();
        let mut done = Vec::new();
        // Each loop says when it has closed its listeners, so "stopped accepting" is true when
        // it is logged.
        let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
        for index in 0..threads {
            let made = worker::Worker::new(
                index,
                &self.listeners,
                self.shared.clone(),
                closed_tx.clone(),
            );
            let loop_ = match made {
                Ok(w) => w,
                Err(e) => {
                    warn!(error = %e, "cannot start an event loop");
                    continue;
                }
            };
            let waker = loop_.waker();
            let (tx, rx) = tokio::sync::oneshot::channel();
            let spawned = std::thread::Builder::new()
                .name(format!("jamd-loop-{index}"))
                .spawn(move || {
                    let expired = loop_.run();
                    let _ = tx.send(expired);
                });
            match spawned {
                Ok(_) => {
                    wakers.push(waker);
                    done.push(rx);
                }
                Err(e) => warn!(error = %e, "cannot start an event-loop thread"),
            }
        }
        // The loops hold their own copies of the listeners.
        drop(self.listeners);
        drop(closed_tx);
        shutdown.cancelled().await;
        for waker in &wakers {
            let _ = waker.wake();
        }
        for _ in 0..wakers.len() {
            if closed_rx.recv().await.is_none() {
                break;
            }
        }
        let grace = self.shared.config.shutdown_grace;
        info!(
            sessions = self.shared.active.load(Ordering::Relaxed),
            grace = %crate::config::format_duration(grace),
            "stopped accepting; answering what clients already sent"
        );
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
